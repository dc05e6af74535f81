//! One client connection: its phase, its queued output, its deadline, and the handlers the worker calls.
//!
//! ```text
//!            accept
//!              │
//!              ▼
//!   ┌──► ReadingHead ──(head with an incomplete body)──► ReadingBody
//!   │      │    │                                          │
//!   │      │    └──(complete request)──► api::handle ◄─────┴──(the broker's or the hook's answer)──┐
//!   │      │                               │   │   └──(needs Redis, or the auth hook)──► Awaiting ─┘
//!   └──────┼────(response, keep-alive)─────┘   └──(subscribe)──► Stream ──► (closed by the worker)
//!          │                                                          format: Sse
//!          │                                                           or WebSocket (after a 101 answer)
//!          └──(error, timeout, `Connection: close`)──► closing: flush, then Closed
//! ```
//!
//! The work is split by phase: `request` reads and holds requests and carries out the API's `Action`; `stream`
//! holds a stream's subscription and does delivery, replay and a WebSocket client's input; this file keeps the
//! connection itself: readiness, the deadline, flushing and closing.
//!
//! A connection never touches the slab, the hub or the poll registry: its handlers return `Next` and the worker
//! acts on it. The worker sees a connection become a stream and adds it to its hub; a stream's later changes of
//! subscription travel in `Next` (`Resubscribed`, or with a `Close`), and the worker applies them to the hub before
//! it drains its inbox again or reaps the connection. A connection holds no read buffer of its own (the worker
//! lends one per read) and keeps bytes only while a request is incomplete or pipelined requests are held back; an
//! idle subscriber holds no input and no output allocation.
//!
//! Invariants: between requests, a connection with `PIPELINE_HOLD` answer bytes unwritten takes no further
//! pipelined request (`holding`) until the client reads them, so answers queue only to a bound; `closing`
//! connections read and discard, and close once their output is written (or their linger passes). The deadline
//! has one meaning per variant (`Deadline`).

pub mod body_budget;
pub mod io;
pub mod outq;
mod request;
mod stream;
pub mod ws;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::api::{self, Ctx, Refusal};
use crate::channels::ChannelTable;
use crate::config::Api;
use crate::http::response::DateCache;
use crate::metrics::Counters;
use io::IoOutcome;
use outq::{Chunk, OutQueue};
pub use request::{BodyState, Parked};
pub use stream::{Delivery, Format, StreamState};
pub use ws::WsState;

/// Bytes read from one connection per loop turn before others get their turn (fairness, as redis'
/// `NET_MAX_WRITES_PER_EVENT`).
const READ_BUDGET: usize = 256 * 1024;
/// Bytes written to one connection per loop turn.
const WRITE_BUDGET: usize = 1024 * 1024;
/// Queued answer bytes at which a connection stops taking pipelined requests until the client reads: without it,
/// a client that pipelines requests and never reads makes the server queue answers without bound.
const PIPELINE_HOLD: usize = 64 * 1024;

/// Where a connection is in its life; each variant owns its state.
pub enum Phase {
    /// Waiting for (the rest of) a request head. `partial`: the bytes of an incomplete head (or of pipelined
    /// requests behind one), only while there are any. Between requests the deadline is `KeepAlive`.
    ReadingHead { partial: Vec<u8> },
    /// A head arrived whose body is still coming.
    ReadingBody(Box<BodyState>),
    /// An event stream, SSE or WebSocket.
    Stream(StreamState),
    /// A complete request waits for the broker or the auth hook (`api::Action::Await`); nothing more is read until it
    /// is answered.
    Awaiting(Box<Parked>),
}

/// What a connection waits for, and until when: one meaning per variant, each set by the phase it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// A request begun (head or body) must be complete by then (`--request-timeout`); 408 after.
    Request(Instant),
    /// Idle between requests (`--keepalive-timeout`): closed silently after.
    KeepAlive(Instant),
    /// A closing connection's peer must have taken its answer by then; closed after.
    Linger(Instant),
    /// A WebSocket stream's next liveness check (its API's `WsRules`: ping or drop).
    Liveness(Instant),
    /// An SSE stream has been silent long enough for a heartbeat (`api::Heartbeat`).
    Heartbeat(Instant),
    /// The token that opened a stream expires before its next heartbeat or liveness check: the stream ends with
    /// its API's `token_expired` frames. Set in place of those deadlines (`stream::until_expiry`), never beside.
    Expiry(Instant),
}

impl Deadline {
    pub fn at(self) -> Instant {
        match self {
            Deadline::Request(at)
            | Deadline::KeepAlive(at)
            | Deadline::Linger(at)
            | Deadline::Liveness(at)
            | Deadline::Heartbeat(at)
            | Deadline::Expiry(at) => at,
        }
    }

    pub fn is_due(self, now: Instant) -> bool {
        now >= self.at()
    }
}

/// What the worker must do after a handler ran.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// An open stream's subscriptions changed (its client subscribed or unsubscribed over the socket): apply these
    /// to the hub, in order. The stream's `channels` already show the change.
    Resubscribed(Vec<HubChange>),
    /// Close the connection, after applying these hub changes (a stream whose subscriptions changed in the same
    /// read that ended it): reaping then removes exactly the memberships the hub holds.
    Close(CloseReason, Vec<HubChange>),
}

impl Next {
    /// A close with no hub change to apply first.
    pub fn close(reason: CloseReason) -> Next {
        Next::Close(reason, Vec::new())
    }
}

/// One change of a stream's hub entries, recorded by the connection for the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubChange {
    /// Add the stream's channel in this slot to the hub.
    Join { slot: u32 },
    /// Remove this stream's member of `channel` in `slot` (the slot is already marked gone, and may hold a new
    /// channel).
    Leave {
        channel: std::sync::Arc<str>,
        slot: u32,
    },
}

/// Why a connection ends (for logs and counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed or reset it.
    Peer,
    /// An unexpected socket error.
    Error,
    /// Idle keep-alive connection: nothing is left to send.
    Timeout,
    /// Given up on with output unsent: a closing connection whose peer did not take its last answer within the
    /// linger (a refusal, a WebSocket close after a protocol error), or a WebSocket peer silent past its liveness
    /// limit (a dead peer takes nothing more). Closed abortively, like a slow subscriber.
    Abandoned,
    /// Output queued over `--max-queued-bytes`.
    Slow,
    /// The answer was written and the connection was to close after it.
    Done,
    /// Graceful shutdown.
    Drained,
}

impl CloseReason {
    /// Its name in logs (the `reason` field).
    pub fn as_str(&self) -> &'static str {
        match self {
            CloseReason::Peer => "peer",
            CloseReason::Error => "error",
            CloseReason::Timeout => "timeout",
            CloseReason::Abandoned => "abandoned",
            CloseReason::Slow => "slow",
            CloseReason::Done => "done",
            CloseReason::Drained => "drained",
        }
    }
}

/// Where a new connection comes from: its listener's API and options, and its peer.
pub struct Origin {
    pub api: Api,
    /// The socket's peer; on a `+proxy` listener, the balancer until the PROXY header names the client.
    pub peer: IpAddr,
    /// The listener is `+proxy`: the connection starts with a PROXY protocol header.
    pub proxy: bool,
    /// The peer already holds a slot in `--max-connections-per-ip`'s count.
    pub counted: bool,
}

pub struct Conn {
    socket: TcpStream,
    pub phase: Phase,
    pub out: OutQueue,
    pub deadline: Deadline,
    /// The listener's API; for a stream, the API that opened it.
    pub api: Api,
    pub readable: bool,
    /// The last readiness event said the peer shut down its side (or the socket has an error).
    pub peer_closed: bool,
    pub writable: bool,
    /// Listed in the worker's dirty list.
    pub dirty: bool,
    /// Close once `out` is written; read and discard until then.
    pub closing: bool,
    /// The client's address: the socket's peer, or the one a PROXY header named.
    pub peer: IpAddr,
    /// A PROXY protocol header is still expected before the first request.
    pub awaiting_proxy: bool,
    /// `peer` holds a slot in `--max-connections-per-ip`'s count, given back when the connection is reaped.
    pub peer_counted: bool,
}

impl Conn {
    pub fn new(socket: TcpStream, origin: Origin, now: Instant, request_timeout: Duration) -> Conn {
        Conn {
            socket,
            phase: Phase::ReadingHead {
                partial: Vec::new(),
            },
            out: OutQueue::default(),
            deadline: Deadline::Request(now + request_timeout),
            api: origin.api,
            readable: false,
            peer_closed: false,
            writable: false,
            dirty: false,
            closing: false,
            peer: origin.peer,
            awaiting_proxy: origin.proxy,
            peer_counted: origin.counted,
        }
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// The socket, for the worker to keep after the connection is gone (`worker::linger`).
    pub fn into_socket(self) -> TcpStream {
        self.socket
    }

    pub fn stream(&self) -> Option<&StreamState> {
        match &self.phase {
            Phase::Stream(stream) => Some(stream),
            _ => None,
        }
    }

    pub fn stream_mut(&mut self) -> Option<&mut StreamState> {
        match &mut self.phase {
            Phase::Stream(stream) => Some(stream),
            _ => None,
        }
    }

    /// Between requests with nothing received and nothing left to write.
    pub fn is_idle(&self) -> bool {
        matches!(self.deadline, Deadline::KeepAlive(_)) && self.out.is_empty()
    }

    /// Whether output is queued or a replay waits for room.
    pub fn wants_flush(&self) -> bool {
        !self.out.is_empty() || self.stream().is_some_and(|s| s.replay.is_some())
    }

    /// Between requests with `PIPELINE_HOLD` answer bytes unwritten: take no more requests until they drain.
    pub fn holding(&self) -> bool {
        matches!(self.phase, Phase::ReadingHead { .. })
            && !self.closing
            && self.out.bytes() >= PIPELINE_HOLD
    }

    /// Whether `on_readable` has work now: input may be waiting and the connection is neither holding nor
    /// waiting for the broker.
    pub fn wants_read(&self) -> bool {
        self.readable && !self.holding() && !self.waits_for_broker()
    }

    /// A request, or a WebSocket stream's message, is parked until the broker or the hook answers.
    fn waits_for_broker(&self) -> bool {
        matches!(self.phase, Phase::Awaiting(_)) || self.ws_parked().is_some()
    }

    /// Handles requests held back by `holding`, then reads until `WouldBlock` (or the budget, or a hold) and
    /// hands what arrived to the phase's handler.
    pub fn on_readable(&mut self, ctx: &mut Ctx, buf: &mut [u8]) -> Next {
        if self.peer_closed && self.stream().is_some_and(StreamState::is_sse) {
            // An SSE stream reads nothing its client sends, so the end of the client's side, which the event
            // already flagged, is all a read would tell: it is skipped (one system call less per subscriber that
            // leaves).
            return self.on_peer_closed();
        }
        if matches!(&self.phase, Phase::ReadingHead { partial } if !partial.is_empty()) {
            let next = self.ingest(&[], ctx);
            if next != Next::Continue {
                return next;
            }
        }
        let mut budget = READ_BUDGET;
        while budget > 0 {
            if self.waits_for_broker() {
                // Read on once the broker or the hook has answered (`resume`).
                return Next::Continue;
            }
            if self.holding() {
                // `readable` stays set: the worker resumes this connection once its answers drain.
                return Next::Continue;
            }
            let n = match io::read_once(&mut self.socket, buf) {
                IoOutcome::Done(n) => n,
                IoOutcome::WouldBlock => {
                    self.readable = false;
                    return Next::Continue;
                }
                IoOutcome::Closed => return self.on_peer_closed(),
                IoOutcome::Error(e) => {
                    log::warn!(worker = ctx.worker, peer:% = self.peer; "read failed: {e}");
                    return Next::close(CloseReason::Error);
                }
            };
            budget = budget.saturating_sub(n);
            if self.closing {
                // Nothing more is taken from a connection being closed.
                continue;
            }
            let data = buf.get(..n).unwrap_or_default();
            if let Phase::Stream(_) = self.phase {
                // An SSE client sends nothing more; a WebSocket client sends frames.
                let next = self.on_stream_input(data, ctx);
                if next != Next::Continue {
                    return next;
                }
                continue;
            }
            let next = self.ingest(data, ctx);
            if next != Next::Continue {
                return next;
            }
            if n < buf.len() && !self.peer_closed && !self.holding() {
                // A short read emptied the socket: skip the read that would only say `WouldBlock`. Data that
                // arrives later raises a new edge; an end of stream that already arrived is flagged by the event
                // (`peer_closed`), and then we read on to see it.
                self.readable = false;
                return Next::Continue;
            }
        }
        Next::Continue
    }

    /// The peer shut down its side: finish writing an answer still queued, otherwise close.
    fn on_peer_closed(&mut self) -> Next {
        self.readable = false;
        // An answer, or a stream's final frames (a WebSocket close), is still worth writing; live events are not.
        if !self.out.is_empty() && (self.closing || !matches!(self.phase, Phase::Stream(_))) {
            self.closing = true;
            Next::Continue
        } else {
            Next::close(CloseReason::Peer)
        }
    }

    /// Queues the refusal in the listener API's style and closes after it.
    fn refuse(&mut self, refusal: Refusal, ctx: &mut Ctx) {
        match refusal {
            Refusal::Timeout => ctx.counters.timeouts += 1,
            Refusal::BodyBudget => ctx.counters.body_budget_refused += 1,
            Refusal::PeerLimit => ctx.counters.peer_refused += 1,
            _ => ctx.counters.bad_requests += 1,
        }
        log::debug!(
            worker = ctx.worker, peer:% = self.peer, reason = refusal.as_str();
            "refused: {refusal:?}"
        );
        self.out.push(Chunk::Owned(
            api::refusal(self.api, refusal, ctx.date).into(),
        ));
        self.start_closing(ctx.now, ctx.config.request_timeout);
    }

    /// From now on the connection only writes what is queued, for at most `linger`, then closes.
    pub fn start_closing(&mut self, now: Instant, linger: Duration) {
        self.closing = true;
        if let Phase::ReadingHead { partial } = &mut self.phase {
            *partial = Vec::new();
        }
        if let Phase::Awaiting(_) = self.phase {
            // A late answer from the broker or the hook finds no request to complete.
            self.phase = Phase::ReadingHead {
                partial: Vec::new(),
            };
        }
        if let Phase::Stream(StreamState {
            format: Format::WebSocket(ws),
            ..
        }) = &mut self.phase
        {
            // Nor a message to handle.
            ws.parked = None;
        }
        self.deadline = Deadline::Linger(now + linger);
    }

    /// The deadline has passed (the worker calls this only then): 408 for an incomplete request, a silent close
    /// for an idle keep-alive connection or a closing one whose peer does not take its answer, a stream's
    /// liveness check or heartbeat.
    pub fn on_deadline(&mut self, now: Instant, ctx: &mut Ctx) -> Next {
        match self.deadline {
            Deadline::KeepAlive(_) => Next::close(CloseReason::Timeout),
            Deadline::Linger(_) => Next::close(CloseReason::Abandoned),
            Deadline::Request(_) => {
                self.refuse(Refusal::Timeout, ctx);
                Next::Continue
            }
            Deadline::Liveness(_) => self.check_liveness(now, ctx),
            Deadline::Heartbeat(_) => {
                self.beat_after_silence(now, ctx);
                Next::Continue
            }
            Deadline::Expiry(_) => {
                self.on_token_expired(ctx);
                Next::Continue
            }
        }
    }

    /// Queues bytes made for this connection (a final event, a retry hint, a heartbeat).
    pub fn queue(&mut self, chunk: Chunk) {
        self.out.push(chunk);
    }

    /// Writes queued output until `WouldBlock`, the budget or the end, refilling a replay from history as the
    /// socket drains.
    pub fn flush(&mut self, table: &ChannelTable, counters: &mut Counters) -> Next {
        let mut budget = WRITE_BUDGET;
        while self.writable && budget > 0 {
            if self.out.is_empty() && !self.refill_replay(table, counters) {
                break;
            }
            if self.out.is_empty() {
                continue;
            }
            match self.out.write_to(&mut self.socket) {
                Ok(written) if written.bytes == 0 => break,
                Ok(written) => {
                    counters.bytes_out += written.bytes as u64;
                    counters.writes += 1;
                    counters.frames_written += written.chunks as u64;
                    budget = budget.saturating_sub(written.bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => match io::classify(Err(e)) {
                    IoOutcome::WouldBlock => self.writable = false,
                    IoOutcome::Error(e) => {
                        log::warn!(peer:% = self.peer; "write failed: {e}");
                        return Next::close(CloseReason::Error);
                    }
                    _ => return Next::close(CloseReason::Peer),
                },
            }
        }
        if self.closing && self.out.is_empty() {
            return Next::close(CloseReason::Done);
        }
        Next::Continue
    }
}

/// Answers and closes a connection that is refused at accept (connection limits, out of descriptors): best effort,
/// one non-blocking write of a short answer on a fresh socket.
pub fn refuse_at_accept(socket: &mut TcpStream, api: Api, refusal: Refusal, date: &DateCache) {
    use std::io::Write;
    let answer = api::refusal(api, refusal, date);
    let _ = socket.write(&answer);
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle connections are the common case: keep them small. Grows only on purpose (the last times: the client's
    /// address, 17 bytes, which `--max-connections-per-ip` counts and a PROXY header may change, with two flags;
    /// and a stream's token expiry, 16 bytes of `StreamState`, 8 more for `Phase`; a WebSocket message parked
    /// for the broker, 8 bytes of the boxed `WsState`).
    #[test]
    fn conn_stays_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 192, "Conn grew to {size} bytes");
        assert!(
            std::mem::size_of::<StreamState>() <= 72,
            "StreamState grew to {} bytes",
            std::mem::size_of::<StreamState>()
        );
        // The boxed state of a WebSocket stream (an API's larger session is boxed again inside it).
        assert!(
            std::mem::size_of::<WsState>() <= 96,
            "WsState grew to {} bytes",
            std::mem::size_of::<WsState>()
        );
        assert!(
            std::mem::size_of::<Phase>() <= 80,
            "Phase grew to {} bytes",
            std::mem::size_of::<Phase>()
        );
    }
}

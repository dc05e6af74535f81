//! One client connection: its phase, its queued output, and its handlers.
//!
//! ```text
//!            accept
//!              │
//!              ▼
//!   ┌──► ReadingHead ──(head with an incomplete body)──► ReadingBody
//!   │      │    │                                          │
//!   │      │    └──(complete request)──► api::handle ◄─────┘
//!   │      │                               │      │
//!   └──────┼────(response, keep-alive)─────┘      └──(subscribe)──► Stream ──► (closed by the worker)
//!          │                                                          format: Sse
//!          │                                                           or WebSocket (after a 101 answer)
//!          └──(error, timeout, `Connection: close`)──► closing: flush, then Closed
//! ```
//!
//! SSE and WebSocket streams share one phase, `Stream`: subscription, replay and delivery are the same, and only
//! the frame taken from the `Message` differs. A WebSocket stream keeps its protocol state (last frame heard, an
//! incomplete frame, a fragmented message) in a `Box`, so the phase stays as small as an SSE stream's.
//!
//! A connection never touches the slab, the hub or the poll registry: its handlers return `Next` and the worker
//! acts on it. It holds no read buffer of its own (the worker lends one per read) and keeps bytes only while a
//! request is incomplete or pipelined requests are held back; an idle subscriber holds no input and no output
//! allocation.
//!
//! Invariants: between requests, a connection with `PIPELINE_HOLD` answer bytes unwritten takes no further
//! pipelined request (`holding`) until the client reads them, so answers queue only to a bound;
//! `closing` connections read and discard, and close once their output is written; a `Stream`
//! connection with a `replay` cursor ignores live events (they are in history and reach it through the replay);
//! live events at or below `skip_upto` were replayed or precede the subscription, and so were those at or below the
//! `since` of their channel's slot (a channel joined later over a WebSocket has its own). The slots of live channels
//! never move while the stream is open (a joined channel takes a free slot), so the hub's members stay valid; the
//! worker applies `Next::Resubscribed` to its hub before it drains its inbox again. A WebSocket stream that sent a
//! close frame is `closing`: it reads and discards, and ends once the close frame is written (RFC 6455 §7.1.1: the
//! server closes the TCP connection first).

pub mod io;
pub mod outq;
pub mod ws;

use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use crate::api::{self, Action, ChannelChange, Ctx, Refusal, Request, WsPeer, WsSession};
use crate::channels::{ChannelTable, ReplayCursor, SubscribedChannel};
use crate::config::{Api, Config};
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{parse_head, BodyFraming, Head, Limits};
use crate::http::response::DateCache;
use crate::http::{HttpError, Parsed};
use crate::message::{EventId, Frame, Message};
use crate::metrics::Counters;
use crate::sse;
use crate::ws::frame as ws_frame;
use io::IoOutcome;
use outq::{Chunk, OutQueue};
use ws::WsInput;
pub use ws::WsState;

/// Bytes read from one connection per loop turn before others get their turn (fairness, as redis'
/// `NET_MAX_WRITES_PER_EVENT`).
const READ_BUDGET: usize = 256 * 1024;
/// Bytes written to one connection per loop turn.
const WRITE_BUDGET: usize = 1024 * 1024;
/// Data bytes taken from history per replay step: replay is paced as the socket drains, never queued whole.
const REPLAY_BATCH: usize = 64 * 1024;
/// Queued answer bytes at which a connection stops taking pipelined requests until the client reads: without it,
/// a client that pipelines requests and never reads makes the server queue answers without bound.
const PIPELINE_HOLD: usize = 64 * 1024;

const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Where a connection is in its life; each variant owns its state.
pub enum Phase {
    /// Waiting for (the rest of) a request head. `idle`: between requests, nothing received yet. `partial`: the
    /// bytes of an incomplete head (or of pipelined requests behind one), only while there are any.
    ReadingHead { idle: bool, partial: Vec<u8> },
    /// A head arrived whose body is still coming.
    ReadingBody(Box<BodyState>),
    /// An event stream, SSE or WebSocket.
    Stream(StreamState),
}

/// A request whose body is incomplete: its head (copied, with spans into the copy) and the body so far.
pub struct BodyState {
    head_bytes: Vec<u8>,
    head: Head,
    body: Vec<u8>,
    decoder: BodyDecoder,
}

enum BodyDecoder {
    /// `Content-Length`: bytes still to come.
    Length(usize),
    Chunked(ChunkedDecoder),
}

impl BodyState {
    /// Takes body bytes from `input`; returns how many were used and whether the body is complete.
    fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), HttpError> {
        match &mut self.decoder {
            BodyDecoder::Length(remaining) => {
                let take = input.len().min(*remaining);
                self.body
                    .extend_from_slice(input.get(..take).unwrap_or_default());
                *remaining -= take;
                Ok((take, *remaining == 0))
            }
            BodyDecoder::Chunked(decoder) => {
                let progress = decoder.feed(input, &mut self.body)?;
                Ok((progress.consumed, progress.done))
            }
        }
    }
}

/// An event stream's subscription and wire format.
pub struct StreamState {
    pub client_id: Box<str>,
    pub channels: Box<[SubscribedChannel]>,
    /// Per channel, this connection's position in the worker hub's member list (the reverse index).
    pub positions: Box<[u32]>,
    pub skip_upto: EventId,
    pub replay: Option<Box<ReplayCursor>>,
    pub format: Format,
}

impl StreamState {
    pub fn is_sse(&self) -> bool {
        matches!(self.format, Format::Sse)
    }

    /// Whether a live event of the channel in `slot` is for this stream.
    fn wants(&self, message: &Message, slot: u32) -> bool {
        let since = self.channels.get(slot as usize).map(|c| c.since);
        self.replay.is_none()
            && message.id > self.skip_upto
            && since.is_some_and(|since| message.id > since)
            && message.is_for(&self.client_id)
    }

    /// Queues this stream's encoding of a published event: the frame built once per message and format, shared;
    /// for a stream whose frames name their recipient, a few-byte header, its own prefix and the shared tail.
    fn queue_event(&self, message: &Message, out: &mut OutQueue) {
        match &self.format {
            Format::Sse => out.push(Chunk::Shared(Frame::clone(message.sse_frame()))),
            Format::WebSocket(ws) => match ws.session.push_prefix() {
                None => out.push(Chunk::Shared(Frame::clone(message.ws_frame()))),
                Some(prefix) => ws::queue_with_prefix(out, prefix, message.ws_frame()),
            },
        }
    }

    /// The channel in `slot` was deleted and has left the hub: the stream's API updates its session.
    pub fn lose_channel(&mut self, slot: usize) {
        let Some(channel) = self.channels.get_mut(slot) else {
            return;
        };
        // Incarnation 0 marks a subscription that is gone (no hub entry, not in the table).
        channel.incarnation = 0;
        if let Format::WebSocket(ws) = &mut self.format {
            api::ws_channel_lost(&mut ws.session, &channel.name);
        }
    }
}

/// A stream's subscriptions, borrowed apart from its WebSocket state while a client message is handled.
struct StreamChannels<'a> {
    channels: &'a mut Box<[SubscribedChannel]>,
    positions: &'a mut Box<[u32]>,
}

impl StreamChannels<'_> {
    /// Applies a subscription change the API made: a joined channel takes a free slot (one left or deleted
    /// before, so that the slots of live channels never move and the hub's members stay valid) or a new one; a
    /// left channel's slot is marked gone. Records what the hub must do in `hub`.
    fn apply(&mut self, change: ChannelChange, hub: &mut Vec<HubChange>) {
        match change {
            ChannelChange::Join(channel) => {
                let free = self.channels.iter().position(|c| c.incarnation == 0);
                let slot = match free {
                    Some(slot) => {
                        if let Some(old) = self.channels.get_mut(slot) {
                            *old = channel;
                        }
                        slot
                    }
                    None => {
                        let mut channels = std::mem::take(self.channels).into_vec();
                        channels.push(channel);
                        *self.channels = channels.into_boxed_slice();
                        let mut positions = std::mem::take(self.positions).into_vec();
                        positions.push(u32::MAX);
                        *self.positions = positions.into_boxed_slice();
                        self.channels.len() - 1
                    }
                };
                hub.push(HubChange::Join { slot: slot as u32 });
            }
            ChannelChange::Leave(name) => {
                let Some(slot) = self
                    .channels
                    .iter()
                    .position(|c| c.incarnation != 0 && c.name == name)
                else {
                    return;
                };
                if let Some(channel) = self.channels.get_mut(slot) {
                    channel.incarnation = 0;
                }
                let joined_now = HubChange::Join { slot: slot as u32 };
                if let Some(at) = hub.iter().position(|h| *h == joined_now) {
                    // Joined and left within one read: it never reached the hub.
                    hub.remove(at);
                } else if let Some(&pos) = self.positions.get(slot) {
                    hub.push(HubChange::Leave {
                        channel: name,
                        slot: slot as u32,
                        pos,
                    });
                }
            }
        }
    }
}

/// How a stream's events go on the wire.
pub enum Format {
    Sse,
    WebSocket(Box<WsState>),
}

/// What the worker must do after a handler ran.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// The connection became an event stream: add it to the hub.
    Subscribed,
    /// An open stream's subscriptions changed (its client subscribed or unsubscribed over the socket): apply these
    /// to the hub, in order. The stream's `channels` already show the change.
    Resubscribed(Vec<HubChange>),
    Close(CloseReason),
}

/// One change of a stream's hub entries, recorded by the connection for the worker.
#[derive(Debug, PartialEq, Eq)]
pub enum HubChange {
    /// Add the stream's channel in this slot to the hub and record its position.
    Join { slot: u32 },
    /// Remove this stream's member of `channel` in `slot`, recorded at `pos` (the slot is already marked gone, and
    /// may hold a new channel).
    Leave {
        channel: Arc<str>,
        slot: u32,
        pos: u32,
    },
}

/// Why a connection ends (for logs and counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed or reset it.
    Peer,
    /// An unexpected socket error.
    Error,
    /// Idle keep-alive connection, or a refused one that did not take its answer in time.
    Timeout,
    /// Output queued over `--max-queued-bytes`.
    Slow,
    /// The answer was written and the connection was to close after it.
    Done,
    /// Graceful shutdown.
    Drained,
}

/// What `deliver` did with a live event.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    Skipped,
    /// Queued, and the output is now over the cap: the worker closes the connection.
    Overflow,
}

pub struct Conn {
    stream: TcpStream,
    pub phase: Phase,
    pub out: OutQueue,
    /// When the current wait ends: request timeout, keep-alive timeout, the linger of a closing connection, a
    /// WebSocket stream's next liveness check, or when an SSE stream whose heartbeat comes after a silence
    /// (flychat's keep-alive, `api::Heartbeat`) is due one.
    pub deadline: Option<Instant>,
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
}

impl Conn {
    pub fn new(
        stream: TcpStream,
        api: Api,
        now: Instant,
        request_timeout: std::time::Duration,
    ) -> Conn {
        Conn {
            stream,
            phase: Phase::ReadingHead {
                idle: false,
                partial: Vec::new(),
            },
            out: OutQueue::default(),
            deadline: Some(now + request_timeout),
            api,
            readable: false,
            peer_closed: false,
            writable: false,
            dirty: false,
            closing: false,
        }
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
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

    /// Whether `on_readable` has work now: input may be waiting and the connection is not holding.
    pub fn wants_read(&self) -> bool {
        self.readable && !self.holding()
    }

    /// Handles requests held back by `holding`, then reads until `WouldBlock` (or the budget, or a hold) and
    /// handles every complete request.
    pub fn on_readable(&mut self, ctx: &mut Ctx, buf: &mut [u8]) -> Next {
        if matches!(&self.phase, Phase::ReadingHead { partial, .. } if !partial.is_empty()) {
            let next = self.ingest(&[], ctx);
            if next != Next::Continue {
                return next;
            }
        }
        let mut budget = READ_BUDGET;
        while budget > 0 {
            if self.holding() {
                // `readable` stays set: the worker resumes this connection once its answers drain.
                return Next::Continue;
            }
            let n = match io::read_once(&mut self.stream, buf) {
                IoOutcome::Done(n) => n,
                IoOutcome::WouldBlock => {
                    self.readable = false;
                    return Next::Continue;
                }
                IoOutcome::Closed => return self.on_peer_closed(),
                IoOutcome::Error(e) => {
                    log::warn!("read failed: {e}");
                    return Next::Close(CloseReason::Error);
                }
            };
            budget = budget.saturating_sub(n);
            if self.closing {
                // Nothing more is taken from a connection being closed.
                continue;
            }
            if let Phase::Stream(_) = self.phase {
                // An SSE client sends nothing more; a WebSocket client sends frames.
                let next = self.on_stream_input(buf.get(..n).unwrap_or_default(), ctx);
                if next != Next::Continue {
                    return next;
                }
                continue;
            }
            let next = self.ingest(buf.get(..n).unwrap_or_default(), ctx);
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
            Next::Close(CloseReason::Peer)
        }
    }

    fn ingest(&mut self, data: &[u8], ctx: &mut Ctx) -> Next {
        let mut pending = match &mut self.phase {
            Phase::ReadingHead { partial, .. } => std::mem::take(partial),
            _ => Vec::new(),
        };
        let input: &[u8] = if pending.is_empty() {
            data
        } else {
            pending.extend_from_slice(data);
            &pending
        };
        let (used, next) = self.process(input, ctx);
        if let Phase::ReadingHead { partial, .. } = &mut self.phase {
            if next == Next::Continue && !self.closing {
                if let Some(rest) = input.get(used..).filter(|r| !r.is_empty()) {
                    *partial = rest.to_vec();
                }
            }
        }
        next
    }

    /// Handles the requests in `buf`; returns how many bytes were used.
    fn process(&mut self, buf: &[u8], ctx: &mut Ctx) -> (usize, Next) {
        let limits = Limits {
            max_head: ctx.config.max_head,
            max_headers: ctx.config.max_headers,
            max_body: ctx.config.max_body,
        };
        let mut at = 0;
        loop {
            if self.closing {
                return (buf.len(), Next::Continue);
            }
            let rest = buf.get(at..).unwrap_or_default();
            match &mut self.phase {
                Phase::Stream(_) => return (buf.len(), Next::Continue),
                Phase::ReadingHead { idle, .. } => {
                    if rest.is_empty() {
                        return (at, Next::Continue);
                    }
                    if self.out.bytes() >= PIPELINE_HOLD {
                        // Keep the rest (`ingest` stores it) until the client takes its answers; it is input
                        // still to handle, so the connection stays readable.
                        self.readable = true;
                        return (at, Next::Continue);
                    }
                    if *idle {
                        *idle = false;
                        self.deadline = Some(ctx.now + ctx.config.request_timeout);
                    }
                    let (head, head_len) = match parse_head(rest, &limits) {
                        Ok(Parsed::Partial) => return (at, Next::Continue),
                        Ok(Parsed::Complete(head, len)) => (head, len),
                        Err(e) => {
                            self.refuse(Refusal::Http(e), ctx);
                            return (buf.len(), Next::Continue);
                        }
                    };
                    let head_bytes = rest.get(..head_len).unwrap_or_default();
                    let after = rest.get(head_len..).unwrap_or_default();
                    let decoder = match head.framing {
                        BodyFraming::None => {
                            at += head_len;
                            let next = self.dispatch(&head, head_bytes, &[], ctx);
                            if next == Next::Subscribed {
                                // A WebSocket client may send frames right behind its upgrade request. Their
                                // channel changes are already in the stream's list, which `Worker::join_hub`
                                // reads whole, so a `Next::Resubscribed` here has nothing more to say.
                                let frames = buf.get(at..).unwrap_or_default();
                                if let Next::Close(reason) = self.on_stream_input(frames, ctx) {
                                    // Over the output cap at once (pongs for a flood of pings): it still joins
                                    // the hub, so that reaping unsubscribes it, and the next tick closes it.
                                    log::debug!("stream closed at once: {reason:?}");
                                    self.close_at_next_tick(reason, ctx);
                                }
                            }
                            if next != Next::Continue {
                                return (buf.len(), next);
                            }
                            continue;
                        }
                        BodyFraming::Length(len) if len > limits.max_body => {
                            self.refuse(
                                Refusal::Http(HttpError::BodyTooLarge {
                                    limit: limits.max_body,
                                }),
                                ctx,
                            );
                            return (buf.len(), Next::Continue);
                        }
                        BodyFraming::Length(len) if after.len() >= len => {
                            at += head_len + len;
                            let next = self.dispatch(
                                &head,
                                head_bytes,
                                after.get(..len).unwrap_or_default(),
                                ctx,
                            );
                            if next != Next::Continue {
                                return (buf.len(), next);
                            }
                            continue;
                        }
                        BodyFraming::Length(len) => BodyDecoder::Length(len),
                        BodyFraming::Chunked => {
                            BodyDecoder::Chunked(ChunkedDecoder::new(limits.max_body))
                        }
                    };
                    if head.expect_continue && after.is_empty() {
                        self.out.push(Chunk::Static(CONTINUE_100));
                    }
                    let capacity = match decoder {
                        BodyDecoder::Length(len) => len.min(64 * 1024),
                        BodyDecoder::Chunked(_) => 0,
                    };
                    let state = BodyState {
                        head_bytes: head_bytes.to_vec(),
                        head,
                        body: Vec::with_capacity(capacity),
                        decoder,
                    };
                    self.phase = Phase::ReadingBody(Box::new(state));
                    self.deadline = Some(ctx.now + ctx.config.request_timeout);
                    at += head_len;
                }
                Phase::ReadingBody(state) => {
                    if rest.is_empty() {
                        return (at, Next::Continue);
                    }
                    match state.feed(rest) {
                        Err(e) => {
                            self.refuse(Refusal::Http(e), ctx);
                            return (buf.len(), Next::Continue);
                        }
                        Ok((used, false)) => {
                            // Progress restarts the stall timer: a slow but moving upload is not cut off.
                            self.deadline = Some(ctx.now + ctx.config.request_timeout);
                            return (at + used, Next::Continue);
                        }
                        Ok((used, true)) => {
                            at += used;
                            let Phase::ReadingBody(state) = std::mem::replace(
                                &mut self.phase,
                                Phase::ReadingHead {
                                    idle: false,
                                    partial: Vec::new(),
                                },
                            ) else {
                                unreachable!("matched ReadingBody above");
                            };
                            let next =
                                self.dispatch(&state.head, &state.head_bytes, &state.body, ctx);
                            if next != Next::Continue {
                                return (buf.len(), next);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Hands a complete request to its API and carries out the answer.
    fn dispatch(&mut self, head: &Head, head_bytes: &[u8], body: &[u8], ctx: &mut Ctx) -> Next {
        let mut req = Request {
            head,
            buf: head_bytes,
            body,
            mount: "",
        };
        match api::handle(self.api, &mut req, ctx) {
            Action::Respond { bytes, close } => {
                self.out.push(Chunk::Owned(bytes.into()));
                if close || ctx.draining {
                    self.start_closing(ctx.now, ctx.config.request_timeout);
                } else {
                    self.phase = Phase::ReadingHead {
                        idle: true,
                        partial: Vec::new(),
                    };
                    self.deadline = Some(ctx.now + ctx.config.keepalive_timeout);
                }
                Next::Continue
            }
            Action::Stream(stream) => {
                let api::Stream {
                    api,
                    opening,
                    subscription,
                    client_id,
                    websocket,
                } = *stream;
                self.out.push(Chunk::Owned(opening.into()));
                let positions = vec![0; subscription.channels.len()].into();
                let format = if websocket {
                    let ws = WsState::new(ctx.now, WsSession::new(api, &client_id));
                    self.deadline = Some(ws.next_check(&api::ws_rules(&ws.session, ctx.config)));
                    Format::WebSocket(Box::new(ws))
                } else {
                    // A heartbeat after a silence is this stream's deadline; others come on the worker's schedule.
                    let beat = api::heartbeat(api, ctx.config);
                    self.deadline = beat.after_silence.then(|| ctx.now + beat.every);
                    Format::Sse
                };
                // Under a prefix of a native listener, the stream belongs to the compatible API that opened it.
                self.api = api;
                self.phase = Phase::Stream(StreamState {
                    client_id,
                    channels: subscription.channels.into(),
                    positions,
                    skip_upto: subscription.head,
                    replay: subscription.replay.map(Box::new),
                    format,
                });
                Next::Subscribed
            }
        }
    }

    /// Bytes a stream's client sent: ignored for SSE, decoded and answered for WebSocket. Text messages go to
    /// the stream's API, whose answers are queued and whose subscription changes are applied to the stream (and
    /// returned for the worker's hub).
    fn on_stream_input(&mut self, data: &[u8], ctx: &mut Ctx) -> Next {
        let Phase::Stream(stream) = &mut self.phase else {
            return Next::Continue;
        };
        if data.is_empty() || stream.is_sse() {
            return Next::Continue;
        }
        let limits = ws_frame::Limits {
            max_message: ctx.config.ws_max_message,
        };
        let mut hub = Vec::new();
        let mut restart = false;
        let input = {
            let StreamState {
                client_id,
                channels,
                positions,
                format: Format::WebSocket(ws),
                ..
            } = stream
            else {
                return Next::Continue;
            };
            let rules = api::ws_rules(&ws.session, ctx.config);
            let mut view = StreamChannels {
                channels,
                positions,
            };
            ws.on_input(
                data,
                ctx.now,
                &limits,
                &rules,
                &mut self.out,
                |session, text, out| {
                    let peer = WsPeer {
                        client_id,
                        channels: view.channels,
                        session,
                    };
                    let answer = api::ws_message(text, peer, ctx);
                    out.push(Chunk::Owned(answer.reply.into()));
                    for change in answer.changes {
                        view.apply(change, &mut hub);
                    }
                    restart |= answer.restart_liveness;
                    if answer.close {
                        WsInput::Closing
                    } else {
                        WsInput::Open
                    }
                },
            )
        };
        if let Phase::Stream(StreamState {
            format: Format::WebSocket(ws),
            ..
        }) = &mut self.phase
        {
            if restart {
                ws.restart_schedule(ctx.now);
                self.deadline = Some(ws.next_check(&api::ws_rules(&ws.session, ctx.config)));
            }
        }
        match input {
            WsInput::Open => {}
            WsInput::Closing => self.start_closing(ctx.now, ctx.config.request_timeout),
            WsInput::Failed => {
                ctx.counters.ws_protocol_errors += 1;
                self.start_closing(ctx.now, ctx.config.request_timeout);
            }
        }
        // Pongs and answers are queued for a client that may not read: they count against the same cap as events.
        if self.out.bytes() > ctx.config.max_queued_bytes {
            self.out.clear();
            if hub.is_empty() {
                return Next::Close(CloseReason::Slow);
            }
            // This read changed the stream's channels: the hub must take those changes before the stream is
            // reaped, since reaping removes each live slot at its recorded position (one the hub never had would
            // name another subscriber's).
            log::debug!("stream over --max-queued-bytes while its channels changed: closing");
            self.close_at_next_tick(CloseReason::Slow, ctx);
        }
        if hub.is_empty() {
            Next::Continue
        } else {
            Next::Resubscribed(hub)
        }
    }

    /// Queues the refusal in the listener API's style and closes after it.
    fn refuse(&mut self, refusal: Refusal, ctx: &mut Ctx) {
        match refusal {
            Refusal::Timeout => ctx.counters.timeouts += 1,
            _ => ctx.counters.bad_requests += 1,
        }
        log::debug!("refused: {refusal:?}");
        self.out.push(Chunk::Owned(
            api::refusal(self.api, refusal, ctx.date).into(),
        ));
        self.start_closing(ctx.now, ctx.config.request_timeout);
    }

    fn start_closing(&mut self, now: Instant, linger: std::time::Duration) {
        self.closing = true;
        if let Phase::ReadingHead { partial, .. } = &mut self.phase {
            *partial = Vec::new();
        }
        self.deadline = Some(now + linger);
    }

    /// Deadlines: 408 for an incomplete request, a silent close for an idle keep-alive connection, and a hard
    /// close for a closing connection whose peer does not take its answer.
    pub fn on_tick(&mut self, now: Instant, ctx: &mut Ctx) -> Next {
        match self.deadline {
            Some(deadline) if now >= deadline => {}
            _ => return Next::Continue,
        }
        if self.closing {
            return Next::Close(CloseReason::Timeout);
        }
        match self.phase {
            Phase::ReadingHead { idle: true, .. } => Next::Close(CloseReason::Timeout),
            Phase::ReadingHead { idle: false, .. } | Phase::ReadingBody(_) => {
                self.refuse(Refusal::Timeout, ctx);
                Next::Continue
            }
            Phase::Stream(StreamState {
                format: Format::WebSocket(ref mut ws),
                ..
            }) => {
                // The API's rules (`api::ws_rules`): drop a peer not heard for `drop_after` with a bare TCP close;
                // ping when due, while the peer was heard within `ping_while_heard_within`.
                let rules = api::ws_rules(&ws.session, ctx.config);
                let unheard = now.saturating_duration_since(ws.last_heard);
                if unheard >= rules.drop_after {
                    ctx.counters.ws_timeouts += 1;
                    return Next::Close(CloseReason::Timeout);
                }
                if let Some(ping) = rules.ping {
                    if now >= ws.ping_due(&rules, ping.every)
                        && unheard < rules.ping_while_heard_within
                    {
                        self.out.push(Chunk::Static(ping.frame));
                        ws.last_ping = now;
                    }
                }
                self.deadline = Some(ws.next_check(&rules));
                Next::Continue
            }
            Phase::Stream(_) => {
                // An SSE stream with a deadline gets its heartbeat after a silence (`api::Heartbeat`): due now,
                // unless output is still queued (then the stream is not silent, only slow).
                let beat = api::heartbeat(self.api, ctx.config);
                if self.out.is_empty() {
                    self.out.push(Chunk::Static(beat.frame));
                }
                self.deadline = Some(now + beat.every);
                Next::Continue
            }
        }
    }

    /// Ends a stream that must first reach (or update) the hub: nothing more is written, and the next tick closes
    /// it. A slow close is counted here, as `reap` counts the immediate ones.
    fn close_at_next_tick(&mut self, reason: CloseReason, ctx: &mut Ctx) {
        if reason == CloseReason::Slow {
            ctx.counters.dropped_slow += 1;
        }
        self.closing = true;
        self.out.clear();
        self.deadline = Some(ctx.now);
    }

    /// An event was queued: an SSE stream whose heartbeat comes after a silence has it due one interval from now.
    /// Only such SSE streams have a deadline (until they close), so for the others this is one test.
    pub fn push_back_heartbeat(&mut self, now: Instant, config: &Config) {
        if self.deadline.is_none() || self.closing {
            return;
        }
        if let Phase::Stream(stream) = &self.phase {
            if stream.is_sse() {
                self.deadline = Some(now + api::heartbeat(self.api, config).every);
            }
        }
    }

    /// Queues a live event of the channel in the stream's `slot`, unless it is not for this stream.
    pub fn deliver(&mut self, message: &Message, slot: u32, max_queued: usize) -> Delivery {
        let Phase::Stream(stream) = &self.phase else {
            return Delivery::Skipped;
        };
        if self.closing || !stream.wants(message, slot) {
            return Delivery::Skipped;
        }
        let queued_before = self.out.bytes();
        stream.queue_event(message, &mut self.out);
        // A stream always has room for one event, however large its encoding (framing a multi-line body makes it
        // bigger than the body, so `--max-body` alone cannot bound it); past that, more than `max_queued` bytes
        // waiting means the subscriber is too slow.
        if queued_before > 0 && self.out.bytes() > max_queued {
            Delivery::Overflow
        } else {
            Delivery::Queued
        }
    }

    /// Queues bytes made for this connection (a final event, a retry hint).
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
            match self.out.write_to(&mut self.stream) {
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
                        log::warn!("write failed: {e}");
                        return Next::Close(CloseReason::Error);
                    }
                    _ => return Next::Close(CloseReason::Peer),
                },
            }
        }
        if self.closing && self.out.is_empty() {
            return Next::Close(CloseReason::Done);
        }
        Next::Continue
    }

    /// Queues the next replay step; false when there is no replay.
    fn refill_replay(&mut self, table: &ChannelTable, counters: &mut Counters) -> bool {
        let Phase::Stream(sse) = &mut self.phase else {
            return false;
        };
        let websocket = !sse.is_sse();
        let Some(cursor) = sse.replay.as_mut() else {
            return false;
        };
        let mut batch = Vec::new();
        let step = table.replay(
            &sse.channels,
            &sse.client_id,
            cursor,
            REPLAY_BATCH,
            &mut batch,
        );
        if let Some(reset) = step.reset {
            let frame = if websocket {
                api::native::ws_reset_frame(reset.reason.as_str(), &reset.channels)
            } else {
                let mut frame = Vec::with_capacity(96);
                let data = api::native::reset_data(reset.reason.as_str(), &reset.channels);
                sse::encode_event(&mut frame, None, Some("reset"), &data);
                frame
            };
            self.out.push(Chunk::Owned(frame.into()));
            counters.resets += 1;
        }
        counters.replayed += batch.len() as u64;
        counters.delivered += batch.len() as u64;
        for message in &batch {
            self.out.push(Chunk::Shared(Frame::clone(if websocket {
                message.ws_frame()
            } else {
                message.sse_frame()
            })));
        }
        if step.done {
            sse.skip_upto = cursor.after;
            sse.replay = None;
        }
        true
    }
}

/// Answers and closes a connection that is refused at accept (connection limit, out of descriptors): best effort,
/// one non-blocking write of a short answer on a fresh socket.
pub fn refuse_at_accept(stream: &mut TcpStream, api: Api, date: &DateCache) {
    use std::io::Write;
    let answer = api::refusal(api, Refusal::Busy, date);
    let _ = stream.write(&answer);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str, incarnation: u64) -> SubscribedChannel {
        SubscribedChannel {
            name: name.into(),
            incarnation,
            since: EventId::ZERO,
        }
    }

    #[test]
    fn subscription_changes_reuse_free_slots_and_tell_the_hub_in_order() {
        let mut channels: Box<[SubscribedChannel]> = vec![channel("a", 1)].into();
        let mut positions: Box<[u32]> = vec![7].into();
        let mut view = StreamChannels {
            channels: &mut channels,
            positions: &mut positions,
        };
        let mut hub = Vec::new();
        view.apply(ChannelChange::Join(channel("b", 2)), &mut hub);
        view.apply(ChannelChange::Leave("a".into()), &mut hub);
        view.apply(ChannelChange::Leave("nowhere".into()), &mut hub);
        view.apply(ChannelChange::Join(channel("c", 3)), &mut hub);
        assert_eq!(
            hub,
            [
                HubChange::Join { slot: 1 },
                HubChange::Leave {
                    channel: "a".into(),
                    slot: 0,
                    pos: 7
                },
                HubChange::Join { slot: 0 },
            ]
        );
        // Joined and left before the hub saw it: nothing for the hub, and the slot is free again.
        let mut hub = Vec::new();
        let mut view = StreamChannels {
            channels: &mut channels,
            positions: &mut positions,
        };
        view.apply(ChannelChange::Join(channel("d", 4)), &mut hub);
        view.apply(ChannelChange::Leave("d".into()), &mut hub);
        assert!(hub.is_empty());
        let live: Vec<&str> = channels
            .iter()
            .filter(|c| c.incarnation != 0)
            .map(|c| &*c.name)
            .collect();
        assert_eq!(live, ["c", "b"]);
        assert_eq!(channels.len(), 3);
    }

    /// Idle connections are the common case: keep them small. Grows only on purpose.
    #[test]
    fn conn_stays_small() {
        let size = std::mem::size_of::<Conn>();
        // 160 until WebSocket streams (issue 6) added `StreamState::format`: 8 bytes, a null-niched `Box` that
        // holds nothing for SSE, so an idle WebSocket's protocol state lives on the heap only for WebSocket.
        assert!(size <= 168, "Conn grew to {size} bytes");
        assert!(
            std::mem::size_of::<StreamState>() <= 72,
            "StreamState grew to {} bytes",
            std::mem::size_of::<StreamState>()
        );
        // The boxed state of a WebSocket stream (an API's larger session is boxed again inside it).
        assert!(
            std::mem::size_of::<WsState>() <= 88,
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

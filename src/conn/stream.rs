//! The stream phase of a connection: its subscription, delivery of live events, replay from history, the
//! heartbeats and liveness checks of a quiet stream, and a WebSocket client's input.
//!
//! Delivery rules: a stream with a `replay` cursor ignores live events (they are in history and reach it through
//! the replay); live events at or below `skip_upto` were replayed or precede the subscription, and so were those at
//! or below the `since` of their channel's slot (a channel joined later over a WebSocket has its own). The slots of
//! live channels never move while the stream is open (a joined channel takes a free slot), so the hub's members
//! (connection key, slot) stay valid. A WebSocket stream that sent a close frame is `closing`: it reads and
//! discards, and ends once the close frame is written (RFC 6455 §7.1.1: the server closes the TCP connection
//! first).
//!
//! What differs between APIs (the reset and deleted events, heartbeats, WebSocket rules and messages) comes from
//! `api`'s per-API hooks; this file names no API.

use std::time::Instant;

use super::outq::{Chunk, OutQueue};
use super::ws::{self, WsInput, WsState};
use super::{CloseReason, Conn, Deadline, HubChange, Next, Phase};
use crate::api::{self, ChannelChange, ChannelLoss, Ctx, WsPeer, WsSession};
use crate::channels::{ChannelTable, ReplayCursor, SubscribedChannel};
use crate::config::Config;
use crate::message::{EventId, Frame, Message};
use crate::metrics::Counters;
use crate::ws::frame as ws_frame;

/// Data bytes taken from history per replay step: replay is paced as the socket drains, never queued whole.
const REPLAY_BATCH: usize = 64 * 1024;

/// An event stream's subscription and wire format.
pub struct StreamState {
    pub client_id: Box<str>,
    /// Per slot, a subscribed channel; a slot whose channel was left or deleted has incarnation 0 (and is reused
    /// by the next channel joined).
    pub channels: Box<[SubscribedChannel]>,
    /// Live events at or below it are not for this stream. `EventId::ZERO` on a stream of channels the Redis
    /// broker feeds, whose position is one per channel, each slot's `since` (`Message::per_channel_id`).
    pub skip_upto: EventId,
    pub replay: Option<Box<ReplayCursor>>,
    pub format: Format,
    /// When the token that opened the stream expires (`Deadline::Expiry`); `None` for a stream opened without one.
    pub expires: Option<Instant>,
}

/// How a stream's events go on the wire.
pub enum Format {
    Sse,
    WebSocket(Box<WsState>),
}

/// What `deliver` did with a live event.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    Skipped,
    /// Queued, and the output is now over the cap: the worker closes the connection.
    Overflow,
}

impl StreamState {
    pub fn is_sse(&self) -> bool {
        matches!(self.format, Format::Sse)
    }

    /// The live slots: (slot, channel) for every channel still subscribed.
    pub fn live_slots(&self) -> impl Iterator<Item = (u32, &SubscribedChannel)> {
        self.channels
            .iter()
            .enumerate()
            .filter(|(_, channel)| channel.incarnation != 0)
            .map(|(slot, channel)| {
                let slot = u32::try_from(slot).expect("a stream has fewer than 2^32 slots");
                (slot, channel)
            })
    }

    /// Whether a live event of the channel in `slot` is for this stream.
    fn wants(&self, message: &Message, slot: u32) -> bool {
        let since = self.channels.get(slot as usize).map(|c| c.since);
        self.replay.is_none()
            && message.id > self.skip_upto
            && since.is_some_and(|since| message.id > since)
            && message.is_for(&self.client_id)
    }

    /// Queues this stream's encoding of an event of the channel in `slot`: the frame built once per message and
    /// format, shared; for a stream whose frames name their recipient, a few-byte header, its own prefix and the
    /// shared tail. An event whose id is a position in its channel alone (`Message::per_channel_id`) moves the
    /// slot's position; on a stream over several channels it goes behind an id made of every slot's position, in
    /// front of the shared rest of the frame (with one channel, that id is the event's own).
    fn queue_event(&mut self, message: &Message, slot: u32, out: &mut OutQueue) {
        if message.per_channel_id {
            if let Some(channel) = self.channels.get_mut(slot as usize) {
                channel.since = message.id;
            }
            if self.channels.len() > 1 {
                self.queue_with_positions(message, out);
                return;
            }
        }
        match &self.format {
            Format::Sse => out.push(Chunk::Shared(Frame::clone(message.sse_frame()))),
            Format::WebSocket(ws) => match ws.session.push_prefix() {
                None => out.push(Chunk::Shared(Frame::clone(message.ws_frame()))),
                Some(prefix) => ws::queue_with_prefix(out, prefix, message.ws_frame()),
            },
        }
    }

    /// Queues an event behind an id that lists the stream's position on each of its channels, in slot order
    /// (`EventId::write_per_channel`): the client resumes every channel from there.
    fn queue_with_positions(&self, message: &Message, out: &mut OutQueue) {
        let positions = self.channels.iter().map(|channel| channel.since);
        let mut head = Vec::with_capacity(16 + 21 * self.channels.len());
        let (frame, rest) = match &self.format {
            Format::Sse => {
                head.extend_from_slice(b"id: ");
                EventId::write_per_channel(&mut head, positions);
                head.push(b'\n');
                message.sse_after_id()
            }
            Format::WebSocket(_) => {
                let mut id = Vec::with_capacity(8 + 21 * self.channels.len());
                id.extend_from_slice(b"{\"id\":\"");
                EventId::write_per_channel(&mut id, positions);
                id.push(b'"');
                let (frame, rest) = message.ws_after_id();
                let payload = id.len() + frame.len().saturating_sub(rest);
                ws_frame::encode_header(ws_frame::Opcode::Text, payload, &mut head);
                head.extend_from_slice(&id);
                (frame, rest)
            }
        };
        out.push(Chunk::Owned(head.into()));
        let rest = u32::try_from(rest).unwrap_or(u32::MAX);
        out.push(Chunk::SharedFrom(Frame::clone(frame), rest));
    }

    /// Applies a subscription change the API made: a joined channel takes a free slot (one left or deleted
    /// before, so that the slots of live channels never move and the hub's members stay valid) or a new one; a
    /// left channel's slot is marked gone. Records what the hub must do in `hub`.
    fn apply(
        channels: &mut Box<[SubscribedChannel]>,
        change: ChannelChange,
        hub: &mut Vec<HubChange>,
    ) {
        match change {
            ChannelChange::Join(channel) => {
                let slot = match channels.iter().position(|c| c.incarnation == 0) {
                    Some(slot) => {
                        if let Some(old) = channels.get_mut(slot) {
                            *old = channel;
                        }
                        slot
                    }
                    None => {
                        let mut grown = std::mem::take(channels).into_vec();
                        grown.push(channel);
                        *channels = grown.into_boxed_slice();
                        channels.len() - 1
                    }
                };
                hub.push(HubChange::Join { slot: slot as u32 });
            }
            ChannelChange::Leave(name) => {
                let Some(slot) = channels
                    .iter()
                    .position(|c| c.incarnation != 0 && c.name == name)
                else {
                    return;
                };
                if let Some(channel) = channels.get_mut(slot) {
                    channel.incarnation = 0;
                }
                let joined_now = HubChange::Join { slot: slot as u32 };
                if let Some(at) = hub.iter().position(|h| *h == joined_now) {
                    // Joined and left within one read: it never reached the hub.
                    hub.remove(at);
                } else {
                    hub.push(HubChange::Leave {
                        channel: name,
                        slot: slot as u32,
                    });
                }
            }
        }
    }
}

impl Conn {
    /// Becomes the event stream the API subscribed: queues its opening and sets its first deadline.
    pub(super) fn open_stream(&mut self, stream: api::Stream, ctx: &mut Ctx) {
        let api::Stream {
            api,
            opening,
            subscription,
            client_id,
            websocket,
            expires,
        } = stream;
        self.out.push(Chunk::Owned(opening.into()));
        let format = if websocket {
            let ws = WsState::new(ctx.now, WsSession::new(api, &client_id));
            self.deadline = until_expiry(
                Deadline::Liveness(ws.next_check(&api::ws_rules(&ws.session, ctx.config))),
                expires,
            );
            Format::WebSocket(Box::new(ws))
        } else {
            let beat = api::heartbeat(api, ctx.config);
            self.deadline = until_expiry(
                Deadline::Heartbeat(ctx.now + beat.every + spread(beat.every, ctx)),
                expires,
            );
            Format::Sse
        };
        // Under a prefix of a native listener, the stream belongs to the compatible API that opened it.
        self.api = api;
        self.phase = Phase::Stream(StreamState {
            client_id,
            channels: subscription.channels.into(),
            skip_upto: subscription.head,
            replay: subscription.replay.map(Box::new),
            format,
            expires,
        });
    }

    /// Queues a live event of the channel in the stream's `slot`, unless it is not for this stream.
    pub fn deliver(&mut self, message: &Message, slot: u32, max_queued: usize) -> Delivery {
        let Phase::Stream(stream) = &mut self.phase else {
            return Delivery::Skipped;
        };
        if self.closing || !stream.wants(message, slot) {
            return Delivery::Skipped;
        }
        let queued_before = self.out.bytes();
        stream.queue_event(message, slot, &mut self.out);
        // A stream always has room for one event, however large its encoding (framing a multi-line body makes it
        // bigger than the body, so `--max-body` alone cannot bound it); past that, more than `max_queued` bytes
        // waiting means the subscriber is too slow.
        if queued_before > 0 && self.out.bytes() > max_queued {
            Delivery::Overflow
        } else {
            Delivery::Queued
        }
    }

    /// An event was queued: an SSE stream's heartbeat is due one interval from now. Only SSE streams have a
    /// `Heartbeat` deadline, so for the others this is one test.
    pub fn push_back_heartbeat(&mut self, now: Instant, config: &Config) {
        if let (Deadline::Heartbeat(_), Phase::Stream(stream)) = (self.deadline, &self.phase) {
            let beat = Deadline::Heartbeat(now + api::heartbeat(self.api, config).every);
            self.deadline = until_expiry(beat, stream.expires);
        }
    }

    /// The channel in `slot` was deleted (its `incarnation`): the stream loses it and gets what its API sends
    /// then; a stream left with no channel ends after a final event. Returns whether the slot held that
    /// incarnation (and so must leave the hub).
    pub fn lose_channel(
        &mut self,
        slot: u32,
        incarnation: u64,
        loss: &ChannelLoss,
        ctx: &Ctx,
    ) -> bool {
        let Phase::Stream(stream) = &mut self.phase else {
            return false;
        };
        let Some(channel) = stream.channels.get_mut(slot as usize) else {
            return false;
        };
        if channel.incarnation != incarnation {
            return false;
        }
        channel.incarnation = 0;
        let websocket = match &mut stream.format {
            Format::WebSocket(ws) => {
                api::ws_channel_lost(&mut ws.session, &channel.name);
                true
            }
            Format::Sse => false,
        };
        if let ChannelLoss::Final { sse, ws } = loss {
            if self.closing {
                return true;
            }
            let none_left = stream.live_slots().next().is_none();
            self.out.push(Chunk::Shared(Frame::clone(if websocket {
                ws
            } else {
                sse
            })));
            if none_left {
                if websocket {
                    self.out.push(Chunk::Static(ws_frame::CLOSE_NORMAL));
                }
                self.start_closing(ctx.now, ctx.config.request_timeout);
            }
        }
        true
    }

    /// Queues the next replay step; false when there is no replay.
    pub(super) fn refill_replay(&mut self, table: &ChannelTable, counters: &mut Counters) -> bool {
        let Phase::Stream(stream) = &mut self.phase else {
            return false;
        };
        let websocket = !stream.is_sse();
        let Some(cursor) = stream.replay.as_mut() else {
            return false;
        };
        let mut batch = Vec::new();
        let step = table.replay(
            &stream.channels,
            &stream.client_id,
            cursor,
            REPLAY_BATCH,
            &mut batch,
        );
        let after = cursor.after;
        if let Some(reset) = step.reset {
            let frame = api::replay_reset(self.api, websocket, &reset);
            self.out.push(Chunk::Owned(frame.into()));
            counters.resets += 1;
        }
        counters.replayed += batch.len() as u64;
        counters.delivered += batch.len() as u64;
        for message in &batch {
            let slot = stream
                .live_slots()
                .find(|(_, channel)| channel.name == message.channel)
                .map_or(0, |(slot, _)| slot);
            stream.queue_event(message, slot, &mut self.out);
        }
        for (channel, reached) in stream.channels.iter_mut().zip(step.reached) {
            channel.since = reached;
        }
        if step.done {
            stream.skip_upto = after;
            stream.replay = None;
        }
        true
    }

    /// Bytes a stream's client sent: ignored for SSE, decoded and answered for WebSocket. Text messages go to
    /// the stream's API, whose answers are queued and whose subscription changes are applied to the stream (and
    /// returned for the worker's hub).
    pub(super) fn on_stream_input(&mut self, data: &[u8], ctx: &mut Ctx) -> Next {
        if data.is_empty() {
            return Next::Continue;
        }
        self.on_ws_input(Some(data), ctx)
    }

    /// The ticket of this WebSocket stream's message that waits for the broker's answer, if one does.
    pub(super) fn ws_parked(&self) -> Option<u64> {
        match &self.phase {
            Phase::Stream(StreamState {
                format: Format::WebSocket(ws),
                ..
            }) => ws.parked.as_ref().map(|parked| parked.ticket),
            _ => None,
        }
    }

    /// The broker answered a parked WebSocket message (the answer is in `ctx`): the message is handled again,
    /// then the input that came behind it (what is still in the socket is read next, as `readable` says).
    pub(super) fn resume_ws_message(&mut self, ctx: &mut Ctx) -> Next {
        self.on_ws_input(None, ctx)
    }

    /// Decodes `data` (after what is held from before) and answers its messages; with `None`, first handles the
    /// parked message again.
    fn on_ws_input(&mut self, data: Option<&[u8]>, ctx: &mut Ctx) -> Next {
        let Phase::Stream(StreamState {
            client_id,
            channels,
            format: Format::WebSocket(ws),
            expires,
            ..
        }) = &mut self.phase
        else {
            return Next::Continue;
        };
        let limits = ws_frame::Limits {
            max_message: ctx.config.ws_max_message,
        };
        let mut hub = Vec::new();
        let mut restart = false;
        let rules = api::ws_rules(&ws.session, ctx.config);
        let (now, max_queued) = (ctx.now, ctx.config.max_queued_bytes);
        let mut on_text = |session: &mut WsSession, text: &str, out: &mut OutQueue| {
            let peer = WsPeer {
                client_id,
                channels,
                session,
            };
            let answer = api::ws_message(text, peer, ctx);
            if answer.parked {
                return WsInput::Parked;
            }
            out.push(Chunk::Owned(answer.reply.into()));
            for change in answer.changes {
                StreamState::apply(channels, change, &mut hub);
            }
            restart |= answer.restart_liveness;
            if answer.close {
                WsInput::Closing
            } else {
                WsInput::Open
            }
        };
        let resumed = match data {
            Some(_) => WsInput::Open,
            None => match ws.parked.take() {
                Some(parked) => {
                    let input = on_text(&mut ws.session, &parked.text, &mut self.out);
                    if input == WsInput::Parked {
                        ws.parked = Some(parked);
                    }
                    input
                }
                None => WsInput::Open,
            },
        };
        let input = match resumed {
            WsInput::Open => ws.on_input(
                data.unwrap_or_default(),
                now,
                &limits,
                max_queued,
                &rules,
                &mut self.out,
                on_text,
            ),
            other => other,
        };
        if let Some(parked) = ws.parked.as_mut() {
            parked.ticket = ctx.waiter.ticket;
        }
        if restart {
            ws.restart_schedule(ctx.now);
            let check = Deadline::Liveness(ws.next_check(&api::ws_rules(&ws.session, ctx.config)));
            self.deadline = until_expiry(check, *expires);
        }
        match input {
            WsInput::Open => {}
            WsInput::Closing => self.start_closing(ctx.now, ctx.config.request_timeout),
            WsInput::Failed => {
                ctx.counters.ws_protocol_errors += 1;
                self.start_closing(ctx.now, ctx.config.request_timeout);
            }
            WsInput::Overflow | WsInput::Parked => {}
        }
        // Pongs and answers are queued for a client that may not read: they count against the same cap as events,
        // by what they hold in memory (`OutQueue::footprint`), not only by their bytes.
        if self.out.footprint() > ctx.config.max_queued_bytes {
            self.out.clear();
            return Next::Close(CloseReason::Slow, hub);
        }
        if hub.is_empty() {
            Next::Continue
        } else {
            Next::Resubscribed(hub)
        }
    }

    /// A WebSocket stream's liveness check is due. The API's rules (`api::ws_rules`): drop a peer not heard for
    /// `drop_after` with a bare TCP close; ping when due, while the peer was heard within `ping_while_heard_within`.
    pub(super) fn check_liveness(&mut self, now: Instant, ctx: &mut Ctx) -> Next {
        let Phase::Stream(StreamState {
            format: Format::WebSocket(ws),
            expires,
            ..
        }) = &mut self.phase
        else {
            return Next::Continue;
        };
        let rules = api::ws_rules(&ws.session, ctx.config);
        let unheard = now.saturating_duration_since(ws.last_heard);
        if unheard >= rules.drop_after {
            ctx.counters.ws_timeouts += 1;
            return Next::close(CloseReason::Abandoned);
        }
        if let Some(ping) = rules.ping {
            if now >= ws.ping_due(&rules, ping.every) && unheard < rules.ping_while_heard_within {
                self.out.push(Chunk::Static(ping.frame));
                ws.last_ping = now;
            }
        }
        self.deadline = until_expiry(Deadline::Liveness(ws.next_check(&rules)), *expires);
        Next::Continue
    }

    /// An SSE stream has been silent for its API's interval (`api::Heartbeat`): it gets a heartbeat, unless output
    /// is still queued (then the stream is not silent, only slow).
    pub(super) fn beat_after_silence(&mut self, now: Instant, ctx: &mut Ctx) {
        let beat = api::heartbeat(self.api, ctx.config);
        if self.out.is_empty() {
            self.out.push(Chunk::Static(beat.frame));
        }
        let next = Deadline::Heartbeat(now + beat.every + spread(beat.every, ctx));
        self.deadline = until_expiry(next, self.stream().and_then(|s| s.expires));
    }

    /// The token that opened the stream has expired: the stream gets its API's last frames (after the events
    /// already queued, none after them: a replay under way stops) and closes once they are written. The client
    /// gets a fresh token and resumes with `Last-Event-ID`.
    pub(super) fn on_token_expired(&mut self, ctx: &mut Ctx) {
        let Phase::Stream(stream) = &mut self.phase else {
            return;
        };
        if self.closing {
            return;
        }
        stream.replay = None;
        let frames = api::token_expired(self.api);
        if stream.is_sse() {
            self.out.push(Chunk::Static(frames.sse));
        } else {
            for frame in frames.ws {
                self.out.push(Chunk::Static(frame));
            }
        }
        ctx.counters.tokens_expired += 1;
        self.start_closing(ctx.now, ctx.config.request_timeout);
    }
}

/// `deadline`, or the stream's token expiry when that comes first. A connection has one deadline; a stream whose
/// token expires before its next heartbeat or liveness check waits for the expiry instead (and has nothing else to
/// wait for after it).
fn until_expiry(deadline: Deadline, expires: Option<Instant>) -> Deadline {
    match expires {
        Some(at) if at <= deadline.at() => Deadline::Expiry(at),
        _ => deadline,
    }
}

/// A random delay of up to an eighth of `every`, added to a heartbeat's deadline when a stream opens and after
/// each heartbeat (never when an event pushes it back, which is exact): streams that went quiet together (a
/// broadcast, a burst of subscribes) drift apart, so their heartbeats come as a spread over the interval, not as
/// one wave of writes in one turn. Only ever later than the silence asks for, never sooner.
fn spread(every: std::time::Duration, ctx: &mut Ctx) -> std::time::Duration {
    let eighth = (every.as_micros() / 8).max(1) as u64;
    std::time::Duration::from_micros(ctx.ids.next_u64() % eighth)
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
        let mut hub = Vec::new();
        StreamState::apply(
            &mut channels,
            ChannelChange::Join(channel("b", 2)),
            &mut hub,
        );
        StreamState::apply(&mut channels, ChannelChange::Leave("a".into()), &mut hub);
        StreamState::apply(
            &mut channels,
            ChannelChange::Leave("nowhere".into()),
            &mut hub,
        );
        StreamState::apply(
            &mut channels,
            ChannelChange::Join(channel("c", 3)),
            &mut hub,
        );
        assert_eq!(
            hub,
            [
                HubChange::Join { slot: 1 },
                HubChange::Leave {
                    channel: "a".into(),
                    slot: 0,
                },
                HubChange::Join { slot: 0 },
            ]
        );
        // Joined and left before the hub saw it: nothing for the hub, and the slot is free again.
        let mut hub = Vec::new();
        StreamState::apply(
            &mut channels,
            ChannelChange::Join(channel("d", 4)),
            &mut hub,
        );
        StreamState::apply(&mut channels, ChannelChange::Leave("d".into()), &mut hub);
        assert!(hub.is_empty());
        let live: Vec<&str> = channels
            .iter()
            .filter(|c| c.incarnation != 0)
            .map(|c| &*c.name)
            .collect();
        assert_eq!(live, ["c", "b"]);
        assert_eq!(channels.len(), 3);
    }
}

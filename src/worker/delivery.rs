//! The delivery half of a worker's turn: fan-out of the inbox's events onto subscriber queues, and the writes.
//!
//! Both run in slices, so that input is looked at between them (the loop's next `poll` has a zero timeout while
//! work remains): a publish that arrives while a long fan-out is being written is read, sequenced and queued behind
//! what its subscribers still have waiting, and one `writev` then carries several events. Nothing waits on a timer:
//! a lone event is queued and written in the turns right after it arrives, one zero-timeout poll per slice apart.
//!
//! Order of a turn's writes: answers (publishers, admin, refusals) go out first, before the fan-out of the events
//! they answer and before any subscriber write, so a publisher's round trip does not wait behind a fan-out. Then
//! subscribers, in the order they became dirty, for at most `FLUSH_SLICE`.
//!
//! Invariant: events reach every subscriber in inbox order. The inbox is taken one message at a time, and a
//! message whose fan-out does not fit in a turn's `FANOUT_SLICE` keeps the members it has not reached yet
//! (`PartialFanout`) and is finished before the next message is taken. Members are copied then because the hub may
//! change before the next turn; a copied member whose connection has since closed, left the channel or been
//! replaced is skipped by `Conn::deliver` (a stream that subscribed after the event has a later `since`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use super::{Shared, Worker};
use crate::api::{self, ChannelLoss};
use crate::bus::WorkerMsg;
use crate::config::Api;
use crate::conn::{CloseReason, Conn, Delivery, Next};
use crate::hub::Member;
use crate::message::Message;
use crate::metrics::Counters;

/// Subscriber queues a turn visits in fan-out before it writes and polls again (about 200 µs at ~50 ns per
/// queued frame). It is also how many frames a subscriber's queue can gain between two of its writes when the
/// worker is behind, together with `FLUSH_SLICE`.
const FANOUT_SLICE: usize = 4096;
/// How long a turn writes to subscribers before it polls again: one write costs ~3.5 µs on loopback, so about 60
/// writes, and a poll (~1–2 µs) every 200 µs costs about 1%.
const FLUSH_SLICE: Duration = Duration::from_micros(200);
/// Writes between two readings of the clock in a flush slice.
const WRITES_PER_CLOCK: usize = 16;

/// Connections with output queued, in three lists: answers go out first, then subscribers with events, then
/// streams that only have a heartbeat to send (a heartbeat can wait; an event should not wait behind a wave of
/// them).
#[derive(Default)]
pub(super) struct Dirty {
    answers: Vec<usize>,
    streams: VecDeque<usize>,
    heartbeats: VecDeque<usize>,
}

impl Dirty {
    /// Lists `conn` once (its `dirty` flag), as an answer or as a stream.
    pub(super) fn mark(&mut self, key: usize, conn: &mut Conn) {
        if conn.dirty {
            return;
        }
        conn.dirty = true;
        if conn.stream().is_some() {
            self.streams.push_back(key);
        } else {
            self.answers.push(key);
        }
    }

    /// Lists a stream that got a heartbeat. Its `dirty` flag stays as it is, so an event queued on it before it is
    /// written lists it again, with the events.
    pub(super) fn mark_heartbeat(&mut self, key: usize) {
        self.heartbeats.push_back(key);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.answers.is_empty() && self.streams.is_empty() && self.heartbeats.is_empty()
    }
}

/// What a fan-out writes to, borrowed field by field (a macro, as `ctx!`), so that the hub's member list can be
/// walked while the members' connections change.
macro_rules! targets {
    ($w:ident) => {
        Targets {
            conns: &mut $w.conns,
            dirty: &mut $w.dirty,
            counters: &mut $w.counters,
            to_reap: &mut $w.to_reap,
            shared: &$w.shared,
        }
    };
}

/// An event whose fan-out a turn's slice cut short: the members it has yet to reach, in hub order.
pub(super) struct PartialFanout {
    message: Arc<Message>,
    members: Vec<Member>,
    next: usize,
}

impl Worker {
    /// Queues events on subscribers for at most `FANOUT_SLICE` subscriber visits: first the rest of an event cut
    /// short last turn, then the inbox in order.
    pub(super) fn fan_out_slice(&mut self, now: Instant) {
        let mut budget = FANOUT_SLICE;
        if let Some(mut partial) = self.partial.take() {
            let end = partial.members.len().min(partial.next + budget);
            let reach = partial.members.get(partial.next..end).unwrap_or_default();
            targets!(self).deliver(reach, &partial.message, now);
            budget -= end - partial.next;
            if end < partial.members.len() {
                partial.next = end;
                self.partial = Some(partial);
                return;
            }
        }
        while budget > 0 {
            let Ok(msg) = self.inbox.try_recv() else {
                return;
            };
            self.counters.inbox_events += 1;
            match msg {
                WorkerMsg::Publish(message) => budget = self.fan_out(message, budget, now),
                WorkerMsg::ChannelDeleted {
                    channel,
                    incarnation,
                } => self.close_channel(&channel, incarnation, now),
                WorkerMsg::Drain => self.start_drain(now),
                WorkerMsg::Answer(reply) => {
                    let (waiter, answer) = *reply;
                    self.on_answer(waiter, answer, now)
                }
            }
        }
    }

    /// Queues one shared frame on the event's local subscribers, at most `budget` of them; keeps the rest for the
    /// next turn. Returns the budget left. Each wire format's frame is built once, by the first subscriber of that
    /// format (`Message::sse_frame`, `ws_frame`).
    fn fan_out(&mut self, message: Arc<Message>, budget: usize, now: Instant) -> usize {
        let members = self.hub.members(&message.channel);
        let reached = members.len().min(budget);
        targets!(self).deliver(members.get(..reached).unwrap_or_default(), &message, now);
        if let Some(rest) = members.get(reached..).filter(|rest| !rest.is_empty()) {
            self.partial = Some(PartialFanout {
                members: rest.to_vec(),
                message,
                next: 0,
            });
        }
        budget - reached
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
                    self.dirty.mark(member.key, conn);
                }
            }
        }
    }

    /// Writes every answer queued this turn (publishers, admin, refusals), before any subscriber.
    pub(super) fn flush_answers(&mut self) {
        let answers = std::mem::take(&mut self.dirty.answers);
        for &key in &answers {
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
                        self.dirty.mark(key, conn);
                    }
                    if held && conn.wants_read() {
                        // Its answers drained: take its held-back requests next turn.
                        self.pending_reads.push(key);
                    }
                }
            }
        }
        if self.dirty.answers.is_empty() {
            // Keep the allocation.
            self.dirty.answers = answers;
            self.dirty.answers.clear();
        }
    }

    /// Writes subscribers in the order they became dirty, each once, then streams with only a heartbeat, for at
    /// most `FLUSH_SLICE`; the rest wait for the next turn, after a look at new input.
    pub(super) fn flush_streams(&mut self) {
        let started = Instant::now();
        let mut again = Vec::new();
        let mut written = 0;
        while let Some(key) = self
            .dirty
            .streams
            .pop_front()
            .or_else(|| self.dirty.heartbeats.pop_front())
        {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            match conn.flush(&self.shared.table, &mut self.counters) {
                Next::Close(reason, _) => self.to_reap.push((key, reason)),
                _ if conn.writable && conn.wants_flush() => again.push(key),
                _ => {}
            }
            written += 1;
            if written % WRITES_PER_CLOCK == 0 && started.elapsed() >= FLUSH_SLICE {
                break;
            }
        }
        for key in again {
            // Its write budget was used up: it goes on behind the others.
            if let Some(conn) = self.conns.get_mut(key) {
                self.dirty.mark(key, conn);
            }
        }
    }
}

/// The connections and lists a fan-out writes to (built by `targets!`).
struct Targets<'a> {
    conns: &'a mut Slab<Conn>,
    dirty: &'a mut Dirty,
    counters: &'a mut Counters,
    to_reap: &'a mut Vec<(usize, CloseReason)>,
    shared: &'a Shared,
}

impl Targets<'_> {
    fn deliver(&mut self, members: &[Member], message: &Message, now: Instant) {
        for &member in members {
            self.deliver_to(member, message, now);
        }
    }

    /// Queues a live event on one member's connection, unless it is not for it.
    fn deliver_to(&mut self, member: Member, message: &Message, now: Instant) {
        let max_queued = self.shared.config.max_queued_bytes;
        let Some(conn) = self.conns.get_mut(member.key) else {
            return;
        };
        match conn.deliver(message, member.slot, max_queued) {
            Delivery::Skipped => {}
            Delivery::Queued => {
                self.counters.delivered += 1;
                conn.push_back_heartbeat(now, &self.shared.config);
                self.dirty.mark(member.key, conn);
            }
            Delivery::Overflow => {
                // Over the cap before this turn's flush. Several events taken from the inbox in one turn can pass
                // it for a subscriber that reads everything, so write what its socket takes now, and close it
                // only if it really is behind: its socket refuses and the queue stays over the cap.
                let mut next = Next::Continue;
                while conn.writable && conn.out.bytes() > max_queued {
                    let before = conn.out.bytes();
                    next = conn.flush(&self.shared.table, self.counters);
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
                        self.dirty.mark(member.key, conn);
                    }
                }
            }
        }
    }
}
